"""Training of the default model ``anima-puppets``: its architecture, the staged trainer behind
``anima train``, and the quality metrics of its benchmark."""
