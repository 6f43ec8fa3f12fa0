"""amn_tf: Actor-Mimic (Parisotto, Ba, Salakhutdinov, ICLR 2016) in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
