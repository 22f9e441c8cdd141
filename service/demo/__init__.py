"""`outrider demo`: the bundled model server, outrider in front of it, and phased traffic."""
