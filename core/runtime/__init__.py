"""How the code runs on this machine: precision and threads, ONNX Runtime sessions and exports,
background jobs, process liveness, terminal progress, and the `info` report."""
