"""From a checkpoint to what ships: the ONNX actor, the export with its parity check and manifest entry, and the
official evaluator's sharded runs."""
