"""Keras' semantics in pure torch, testable alone and proved against real Keras; nothing here imports Lightning.

- `layers`: the Dense stack (`DenseStack`, a plain nn.Module) and its options by Keras name: activations,
  initializers, regularizers, constraints.
- `losses`: Keras losses by name, on logits.
- `optimizers`: Keras' update rules (Adam, AdamW, RMSprop, SGD) with clipping, accumulation and weight decay.
- `schedules`: Keras' learning-rate schedules and ReduceLROnPlateau as torch schedulers.
- `optim`: an optimizer and a schedule built from their Keras names and options, with the cross-checks.
"""
