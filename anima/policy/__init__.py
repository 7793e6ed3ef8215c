"""policy: the consent registry, face analysis backends, and the gate in front of generation."""
