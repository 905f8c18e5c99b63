# ManiSkill2 challenge submission: the official evaluator scores our agent.
#   docker build -t ms2agent .
#   docker run --rm --gpus all ms2agent python -m mani_skill2.evaluation.run_evaluation -e PickCube-v0 -o /tmp/out -n 1
# Base: Ubuntu 20.04 + CUDA/GL, Miniconda Python 3.8, mani-skill2 0.5.0 (sapien 2.2.2), NVIDIA Vulkan ICD.
FROM haosulab/mani-skill2:latest

# Agent runtime (numpy + onnxruntime only). onnxruntime 1.19.2 is the last release with Python 3.8
# wheels; mani-skill2 needs numpy < 1.24.
RUN python -m pip install --no-cache-dir onnxruntime==1.19.2 numpy==1.23.5

WORKDIR /submission
COPY user_solution.py ./
COPY agent/ ./agent/
COPY weights/ ./weights/
ENV PYTHONPATH=/submission
