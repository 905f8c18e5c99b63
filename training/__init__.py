"""Training side: environments, PointNet PPO/BC, two-stage fine-tuning, ONNX export (uses `agent`)."""
