"""Tests of the packaging service, without the agent."""
