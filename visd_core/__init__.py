"""visd: RL post-training of video-language models with grounded reasoning (VISD, VisionCoach)."""
