"""lepton-tabular: an example third-party Lepton plugin.

It adds the ``tabular`` domain (numeric feature vectors read from CSV) and the ``mlp`` backbone.
The entry-point module, :mod:`lepton_tabular.plugin`, imports nothing heavy; the domain and the
backbone are imported when their factories are called.
"""

__version__ = "0.1.0"
