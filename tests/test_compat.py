import subprocess
import sys

SCRIPT = """
from splitleak._compat import import_torchvision
tv = import_torchvision()
import torchvision.datasets, torchvision.transforms, torchvision.models
assert import_torchvision() is tv
print(tv.__version__, tv.datasets.FashionMNIST.__name__)
"""


def test_torchvision_imports_on_this_torch_build() -> None:
    # a fresh interpreter: the shim must work on the first import, whichever torch build is installed
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "FashionMNIST" in out.stdout
