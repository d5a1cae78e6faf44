"""The feedback-conditioned teacher of VISD: its privileged context and its parameters."""
