"""lm_trax: neural language models (NPLM, RNN, GRU, LSTM) in Trax/JAX."""

import pathlib
import re

import setuptools

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r"__version__ = '([^']+)'", (
    HERE / 'lm_trax' / '__init__.py').read_text()).group(1)

# The shipped gin configs stay in the repository's gin/ (the README's commands
# name gin/...) and install as the data-only package lm_trax/gin, one package
# per folder, where lm_trax.config finds them (outside a clone too).
GIN_PACKAGES = ['lm_trax.gin'] + sorted(
    'lm_trax.gin.' + '.'.join(d.relative_to(HERE / 'gin').parts)
    for d in (HERE / 'gin').rglob('*') if d.is_dir())

# Versions tested together on CPU (Python 3.11, Linux x86_64): trax 1.4.1,
# jax/jaxlib 0.10.2, tensorflow 2.21.0, tensorflow-datasets 4.9.10,
# gin-config 0.5.0, numpy 2.4.6. trax pins nothing, so the bounds keep pip on
# the tested minor versions; lm_trax.compat adapts trax to this JAX.
INSTALL_REQUIRES = [
    'trax==1.4.1',
    'jax>=0.10.2,<0.11',
    'jaxlib>=0.10.2,<0.11',
    'tensorflow>=2.21,<2.22',
    'tensorflow-datasets>=4.9.10,<4.10',
    'importlib_resources>=6',  # tensorflow-datasets 4.9.10 needs it, undeclared.
    'gin-config==0.5.0',
    'absl-py>=2.1',
    'numpy>=2.4,<2.5',
    'matplotlib>=3.9',
    'tqdm>=4.66',
    'PyYAML>=6',  # Sweep grids (gin/sweeps/*.yaml).
    'filelock>=3',  # JAX's persistent compilation cache (compilation_cache).
    'safetensors>=0.4',  # Exported weights (lm_trax.export), read without torch.
]

EXTRAS_REQUIRE = {
    # nbclient runs notebooks/tour.ipynb on an ipykernel kernel
    # (tests/test_notebook.py); pytest-xdist runs the test files in two
    # processes at once (`pytest -n 2 --dist loadfile`, tests/workers.py).
    'test': ['pytest>=8', 'nbclient>=0.10', 'nbformat>=5.10',
             'ipykernel>=6.29', 'pytest-xdist>=3.5'],
    # To view the event files in train/, eval/ and valid/: tensorflow 2.21 no
    # longer installs TensorBoard. (Writing them needs only tensorflow.)
    'tensorboard': ['tensorboard>=2.21,<2.22'],
    # To open and run notebooks/tour.ipynb: `jupyter lab` and the kernel it
    # runs the tour on (this Python, with lm_trax). Neither is needed by the
    # library; the stored tour ran on jupyterlab 4.6.6 and ipykernel 7.4.0.
    'notebook': ['jupyterlab>=4.6', 'ipykernel>=6.29'],
    # bench/train_speed.py and bench/eval_speed.py compare with PyTorch on CPU,
    # measured with torch 2.13.0's CPU wheel (2.13.0+cpu, which ==2.13.0
    # accepts). A plain `pip install torch` from PyPI resolves a newer CUDA
    # build instead (2.15.0 on 2026-12-03, with GBs of nvidia-* packages).
    # The CPU-only wheel: pip install torch==2.13.0 --index-url
    # https://download.pytorch.org/whl/cpu
    'bench': ['torch==2.13.0'],
    # Accelerators (not testable on the CPU-only CI): JAX's own wheels.
    'gpu': ['jax[cuda12]>=0.10.2,<0.11'],
    'tpu': ['jax[tpu]>=0.10.2,<0.11'],
}


def long_description():
  """README.md for the package index, its relative links (docs/*.md, the
  notebook, LICENSE: files of the source tree, which an index page cannot
  reach) written as the paths they name, and its links to its own headings
  as their text (an index page's headings have no anchors). The project has
  no public URL to make them absolute with."""
  def as_text(link):
    text, target = link[1], link[2].split('#')[0]
    if not target or text in (target, f'`{target}`'):
      return text if not target else f'`{target}`'
    return f'{text} (`{target}`)'
  readme = (HERE / 'README.md').read_text(encoding='utf-8')
  return re.sub(r'\[([^\]]+)\]\((?!https?://)([^)\s]+)\)', as_text, readme)


setuptools.setup(
    name='lm_trax',
    version=VERSION,
    description='Neural language models in Trax: NPLM, RNN, GRU and LSTM LMs.',
    long_description=long_description(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    classifiers=[
        'Development Status :: 4 - Beta',
        'Intended Audience :: Science/Research',
        'Operating System :: POSIX :: Linux',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    packages=['lm_trax', 'lm_trax.cells'] + GIN_PACKAGES,
    package_dir={'lm_trax': 'lm_trax', 'lm_trax.gin': 'gin'},
    package_data={package: ['*.gin', '*.yaml'] for package in GIN_PACKAGES},
    python_requires='>=3.11',  # jax 0.10 and numpy 2.4 need 3.11.
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        'console_scripts': [
            'lm-trax-train = lm_trax.train_command:main',
            'lm-trax-evaluate = lm_trax.evaluate:main',
            'lm-trax-score = lm_trax.score:main',
            'lm-trax-generate = lm_trax.generate:main',
            'lm-trax-sweep = lm_trax.sweep:main',
            'lm-trax-plot = lm_trax.plot:main',
            'lm-trax-download = lm_trax.download:main',
            'lm-trax-export = lm_trax.export:main',
        ],
    },
)
