"""Chats kept in SQLite: the store, its migrations and exports."""
