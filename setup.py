"""Plain setuptools install for amn_tf (Actor-Mimic in TensorFlow 2 / Keras 3)."""

from setuptools import find_packages, setup

setup(
    name="amn_tf",
    version="0.1.0",
    description="Actor-Mimic: deep multitask and transfer RL (Parisotto et al., ICLR 2016) in TF2/Keras 3",
    packages=find_packages(include=["amn_tf", "amn_tf.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        # Pinned to versions tested together on Python 3.11 (CPU build of TensorFlow).
        "tensorflow-cpu==2.21.0",
        "keras==3.15.1",
        "gymnasium==1.4.0",
        "opencv-python-headless>=4.9",  # gymnasium AtariPreprocessing (the gym env backend)
        "ale-py==0.12.1",
        "absl-py>=2.1,<3",
        "numpy>=1.26,<2.5",
        "tensorboard==2.21.0",  # tf.summary scalars need it
        "matplotlib>=3.10,<3.12",  # report mode: learning-curve plots
    ],
    extras_require={
        # Ray is in dev too: the tests start a real local Ray instance.
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "ruff>=0.16", "ray==2.58.0"],
        "profiling": ["tensorboard-plugin-profile>=2.24"],
        "distributed": ["ray==2.58.0"],
    },
    entry_points={"console_scripts": ["amn_tf=amn_tf.main:run"]},
)
