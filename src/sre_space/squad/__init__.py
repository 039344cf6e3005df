"""The squad: Scout, Brain, Fixer and Jules as nodes of one LangGraph graph."""
