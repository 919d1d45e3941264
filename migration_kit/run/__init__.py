"""Running events through both paths: the one candidate-run plan, replay, resume, recording, distribution."""
