"""Training the classifiers on cached encoder outputs: hyper-parameters, the trainer (it reports
to a `RunRecorder`, which the service layer backs with the database), baselines, and training jobs
run as background processes."""
