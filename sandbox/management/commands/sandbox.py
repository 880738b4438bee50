from django.core.management.base import BaseCommand, CommandParser

from sandbox.server import serve


class Command(BaseCommand):
    help = "Run the local simulator of the Paynet, WiseCP and Payofin APIs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--latency-ms", type=float, default=0)
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, **options) -> None:
        serve(
            host=options["host"],
            port=options["port"],
            seed=options["seed"],
            latency_ms=options["latency_ms"],
        )
