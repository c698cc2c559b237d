"""Trains a language model from gin configs; rerun the same command to resume.

  python train.py --gin_file=gin/ptb_lstm.gin

The same command as `lm-trax-train`, which installing the package provides:
see lm_trax/train_command.py, or `python train.py --help`.
"""

from lm_trax import train_command

# absl's pair, for code that parses FLAGS itself and then calls main(argv).
FLAGS = train_command.FLAGS
main = train_command.run

if __name__ == '__main__':
  train_command.main()
