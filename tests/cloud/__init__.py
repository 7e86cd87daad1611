"""Loopback stand-ins for the cloud TTS APIs (ElevenLabs, edge-tts): test code, never product code."""
