"""ChestX-ray14 data: the NIH-layout reader (`nih`), patient-disjoint splits (`splits`), the tf.data
pipeline (`pipeline`), pre-resized TFDS shards (`shards`), ChestMNIST (`chestmnist`) and the
synthetic NIH-layout generator (`synth`)."""
