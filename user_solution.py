"""Entry point for the official ManiSkill2 evaluator (`from user_solution import UserPolicy`)."""
import agent  # noqa: F401  (sets up Vulkan before the evaluator creates its env)
