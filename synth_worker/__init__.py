"""Synthesis workers and engines behind one Engine protocol: Bark, espeak-ng, ElevenLabs, edge-tts."""
