"""`DiscriminativeAdamW`: AdamW with a smaller learning rate for the pretrained backbone than for the head.

Fine-tuning ImageNet weights on a few thousand X-rays with one learning rate either moves the pretrained
layers as fast as the randomly initialised head (and forgets what made the start worth having) or teaches
the head slowly. The usual cure (ULMFiT's discriminative fine-tuning, timm's layer-wise decay in its
simplest form): the backbone's variables step at `backbone_lr_scale` times the schedule's rate. Adam's
steps are invariant to the gradient's scale, so scaling gradients would not do it; the rate is scaled in
`update_step`, per variable. Decoupled weight decay stays at the schedule's rate for every variable.
"""

import keras

from keras_mamsf.utils.keras_internals import optimizer_variable_index


@keras.saving.register_keras_serializable(package="keras_mamsf")
class DiscriminativeAdamW(keras.optimizers.AdamW):
    """AdamW whose learning rate is multiplied by `backbone_lr_scale` for the variables in `scaled_variables`.

    Args:
        backbone_lr_scale: the factor (1.0: plain AdamW).
        scaled_variables: the variables to scale (the model's backbone: `MAMSFClassifier.backbone_variables()`).
            Not part of the config: a reloaded optimizer scales nothing until it is given them again.
        **kwargs: AdamW's arguments.

    Example:
        optimizer = DiscriminativeAdamW(1e-3, backbone_lr_scale=0.1,
                                        scaled_variables=model.backbone_variables(), weight_decay=1e-4)
    """

    def __init__(self, *args, backbone_lr_scale=1.0, scaled_variables=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.backbone_lr_scale = float(backbone_lr_scale)
        self._scaled_ids = {id(variable) for variable in scaled_variables}
        self._scaled_slots = set()

    def build(self, variables):
        super().build(variables)
        self._scaled_slots = {index for index, variable in enumerate(variables) if id(variable) in self._scaled_ids}

    def update_step(self, gradient, variable, learning_rate):
        if self.backbone_lr_scale != 1.0 and optimizer_variable_index(self, variable) in self._scaled_slots:
            learning_rate = learning_rate * self.backbone_lr_scale
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "backbone_lr_scale": self.backbone_lr_scale}
