"""The training algorithms: PPO and its two-stage runs, behaviour cloning, distillation of a privileged expert
(BC + DAgger), and demonstration conversion."""
