"""Persona: character files and the live persona in the database."""
