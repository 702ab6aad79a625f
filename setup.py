"""iouseg: a TFX pipeline that trains FCN segmentation models on the soft IoU loss."""
import setuptools

setuptools.setup(
    name='iouseg',
    version='0.1.0',
    description='TFX pipeline for semantic segmentation trained on the soft IoU loss',
    python_requires='>=3.9,<3.11',
    packages=setuptools.find_packages(include=['iouseg', 'iouseg.*', 'pipeline', 'pipeline.*',
                                               'components', 'components.*', 'trainer', 'trainer.*',
                                               'transform', 'transform.*', 'kubeflow', 'kubeflow.*']),
    # Pinned versions live in requirements.lock (installed with --no-deps); these are the direct needs.
    install_requires=['tfx==1.16.0', 'tensorflow==2.16.2', 'tensorflow-transform==1.16.0',
                      'tensorflow-model-analysis==0.47.1', 'apache-beam[gcp]==2.61.0',
                      'tf-keras==2.16.0', 'kfp==2.5.0', 'pillow', 'matplotlib'],
    entry_points={'console_scripts': ['iouseg=iouseg.cli:main']},
)
