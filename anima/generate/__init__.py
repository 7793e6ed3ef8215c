"""generate: the Animate Anyone model and pipeline (diffusers), pose tools, weight import."""
