"""Analysis of policies and tasks: student diagnosis, camera-point shares, learning curves, image strips."""
