"""The Neural Turing Machine itself (TensorFlow), one module per layer of the architecture,
imported one way, down:

    numerics       small helpers (a norm with a safe gradient, sums that normalise)
    addressing     content and location addressing, one function per equation (paper §3.3)
    memory         read and erase/add write (§3.1, §3.2)
    controller     the LSTM or feed-forward controller
    cell           one time step: controller, heads, memory; ``NTMState``
    machine        ``NTM``: the cell over time (a dynamic ``tf.while_loop`` or unrolled)
    lstm_baseline  ``LSTMBaseline``: the paper's stacked-LSTM baseline (no memory, §4.6)
    architectures  ``build_model``: the network a config names
    state          the state packed into one vector per sequence (stateful exports)
    config         ``ModelConfig``, the architecture
    flops          the arithmetic a step needs

Training lives beside it (``ntm.training``); both stand on ``ntm.contract``.
"""
