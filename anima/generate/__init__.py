"""generate: inference of the Animate Anyone model on diffusers: the pipeline, its models and
attention processors, the limb warp, the runner that loads a model and animates a request, and the
Moore-AnimateAnyone weight import. It knows nothing of consent: the API wraps it in the gate."""
