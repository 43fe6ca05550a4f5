"""How good the models are: metrics and prediction sets, evaluating on a catalogue, the held-out
predictions shipped with the models, and the figures drawn from them."""
