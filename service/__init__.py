"""MESS service: FastAPI server storing supernets, profiles, searches and tailored models."""
