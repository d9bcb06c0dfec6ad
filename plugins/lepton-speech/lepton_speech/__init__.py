"""lepton-speech: the ``speech`` domain and the wav2vec2 family (wav2vec2, HuBERT, WavLM).

The entry-point module, :mod:`lepton_speech.plugin`, imports nothing heavy; the domain, the
preprocessor and the backbones (torch, transformers, torchaudio, soundfile) are imported when
their factories are called.
"""

__version__ = "0.1.0"
