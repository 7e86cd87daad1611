"""Synthesis workers and engines: Bark (primary), espeak-ng, ElevenLabs, edge-tts behind one Engine protocol."""
