"""iouseg: a TFX pipeline that trains FCN segmentation models on the soft IoU loss."""

import pathlib

import setuptools

# One list of direct dependencies, requirements.in (pinned with everything below it in
# requirements.lock, which `make install` installs with --no-deps); what follows its '# tests:' line
# is the `test` extra.
_REQUIREMENTS = (pathlib.Path(__file__).parent / 'requirements.in').read_text().split('\n# tests:')


def _names(text: str) -> list:
  return [
    line.strip() for line in text.splitlines()[1:] if line.strip() and not line.startswith('#')
  ]


setuptools.setup(
  name='iouseg',
  version='0.1.0',
  description='TFX pipeline for semantic segmentation trained on the soft IoU loss',
  python_requires='>=3.10,<3.11',  # the code uses `X | None`; TFX 1.16's wheels stop at 3.10
  # `kubeflow` has no __init__.py: it is a PEP 420 portion of the namespace that Kubeflow's own
  # SDKs (kubeflow.training, kubeflow.katib) share, so neither hides the other (docs/kubeflow.md).
  packages=setuptools.find_packages(
    include=[
      'iouseg',
      'iouseg.*',
      'pipeline',
      'pipeline.*',
      'components',
      'components.*',
      'trainer',
      'trainer.*',
      'transform',
      'transform.*',
    ]
  )
  + setuptools.find_namespace_packages(include=['kubeflow', 'kubeflow.*']),
  install_requires=_names(_REQUIREMENTS[0]),
  extras_require={'test': _names(_REQUIREMENTS[1])},
  # Non-Python files the code reads at run time: the model card's Jinja2 templates.
  package_data={'components.model_card': ['templates/*.j2']},
  entry_points={'console_scripts': ['iouseg=iouseg.cli:main']},
)
