"""RL objectives on one engine: GRPO, VISD (token-reweighted GRPO), GSPO, VisionCoach."""
