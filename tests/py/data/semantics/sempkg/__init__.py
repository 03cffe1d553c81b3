"""Package doc."""
from .sub import *
VALUE = 5
