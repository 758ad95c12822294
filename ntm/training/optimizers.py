"""Adam and RMSProp as plain ``tf.Module``s.

Written out (a dozen lines each) rather than taken from Keras so that their slots are ordinary
``tf.Variable``s that ``tf.train.Checkpoint`` saves and restores exactly, with no Keras import.
"""

from __future__ import annotations

import tensorflow as tf


class Adam(tf.Module):
    """Adam (Kingma & Ba 2015) with bias correction.

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  x -= lr m^ / (sqrt(v^) + eps)
    """

    def __init__(self, variables, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, name: str = "adam"):
        super().__init__(name=name)
        self.learning_rate = tf.Variable(learning_rate, trainable=False, name="learning_rate")
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name="m") for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name="v") for v in variables]

    def reset(self) -> None:
        """Forget every step taken (a fresh start of the same variables)."""
        self.iterations.assign(0)
        for slot in (*self.m, *self.v):
            slot.assign(tf.zeros_like(slot))

    def apply(self, gradients, variables) -> None:
        self.iterations.assign_add(1)
        t = tf.cast(self.iterations, tf.float32)
        scale = self.learning_rate * tf.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
        for g, x, m, v in zip(gradients, variables, self.m, self.v):
            m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
            v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
            x.assign_sub(scale * m / (tf.sqrt(v) + self.epsilon))


class RMSProp(tf.Module):
    """RMSProp with momentum, as in the paper (Graves 2013 form without centring).

    s = rho s + (1 - rho) g^2;  u = momentum u + lr g / sqrt(s + eps);  x -= u
    """

    def __init__(self, variables, learning_rate: float, momentum: float = 0.9, rho: float = 0.95,
                 epsilon: float = 1e-8, name: str = "rmsprop"):
        super().__init__(name=name)
        self.learning_rate = tf.Variable(learning_rate, trainable=False, name="learning_rate")
        self.momentum, self.rho, self.epsilon = momentum, rho, epsilon
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.s = [tf.Variable(tf.zeros_like(v), trainable=False, name="s") for v in variables]
        self.u = [tf.Variable(tf.zeros_like(v), trainable=False, name="u") for v in variables]

    def reset(self) -> None:
        """Forget every step taken (a fresh start of the same variables)."""
        self.iterations.assign(0)
        for slot in (*self.s, *self.u):
            slot.assign(tf.zeros_like(slot))

    def apply(self, gradients, variables) -> None:
        self.iterations.assign_add(1)
        for g, x, s, u in zip(gradients, variables, self.s, self.u):
            s.assign(self.rho * s + (1.0 - self.rho) * tf.square(g))
            u.assign(self.momentum * u + self.learning_rate * g / tf.sqrt(s + self.epsilon))
            x.assign_sub(u)


def make_optimizer(name: str, variables, learning_rate: float, momentum: float = 0.9):
    """"adam" or "rmsprop" over ``variables``."""
    if name == "adam":
        return Adam(variables, learning_rate)
    if name == "rmsprop":
        return RMSProp(variables, learning_rate, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adam' or 'rmsprop'")
