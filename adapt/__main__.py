from adapt.cli import app

app()
