"""placeholder"""
import click

command = click.Command("demo")
