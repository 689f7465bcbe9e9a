#!/usr/bin/env python3
"""Django's ORM against Shoal's PostgreSQL endpoint, as a project uses it: an app (built in a
temporary directory) with a foreign key, unique, indexed, decimal, boolean, date, datetime and
JSON fields; `makemigrations` and `migrate` with Django's contenttypes and auth apps (whose
migrations alter tables other tables reference); then the ORM: create, bulk_create, get_or_create,
filters (icontains, startswith, ranges, JSON keys), select_related and prefetch_related,
annotate/aggregate, F() updates, slicing, a rolled-back atomic block, IntegrityError on a
unique field, cascading delete; `inspectdb` reads the tables back; .iterator() (a server-side
cursor); dumpdata, flush (TRUNCATE) and loaddata (sequence resets) round-trip the app's rows.

Usage: django_session.py WRITE_PORT [READ_PORT ...]
(prints "django session: ok" on success; writes go to the first port, reads are checked on
every port given, waiting up to 10 s for a node that lags)
"""

import datetime as dt
import io
import sys
import tempfile
import textwrap
import time
from decimal import Decimal
from pathlib import Path

MODELS = '''
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100, unique=True)
    born = models.DateField(null=True)


class Book(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    title = models.CharField(max_length=200, db_index=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    in_print = models.BooleanField(default=True)
    added = models.DateTimeField(auto_now_add=True)
    meta = models.JSONField(default=dict)
'''


def main():
    ports = [int(p) for p in sys.argv[1:]]
    if not ports:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as directory:
        app = Path(directory) / "shop"
        (app / "migrations").mkdir(parents=True)
        (app / "__init__.py").write_text("")
        (app / "migrations" / "__init__.py").write_text("")
        (app / "models.py").write_text(textwrap.dedent(MODELS))
        sys.path.insert(0, directory)
        run(ports)
    print("django session: ok")


def database(port):
    return {"ENGINE": "django.db.backends.postgresql", "NAME": "shoal", "USER": "shoal",
            "HOST": "127.0.0.1", "PORT": str(port), "TEST": {"MIRROR": "default"}}


def run(ports):
    import django
    from django.conf import settings
    databases = {"default": database(ports[0])}
    for i, port in enumerate(ports):
        databases[f"node{i}"] = database(port)
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "shop"],
        DATABASES=databases, USE_TZ=True, TIME_ZONE="UTC", SECRET_KEY="shoal-test",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField")
    django.setup()
    from django.core.management import call_command
    call_command("makemigrations", "shop", verbosity=0)
    call_command("migrate", verbosity=0)
    out = io.StringIO()
    call_command("migrate", "--check", verbosity=0, stdout=out)  # nothing left to apply
    crud(ports)


def eventually(check):
    deadline = time.time() + 10
    while True:
        try:
            return check()
        except AssertionError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def crud(ports):
    from django.contrib.auth.models import Permission, User
    from django.core.management import call_command
    from django.db import IntegrityError, transaction
    from django.db.models import Avg, Count, F, Sum
    from shop.models import Author, Book

    assert Permission.objects.filter(codename="add_book").exists(), "post-migrate permissions"
    User.objects.create_user("ada", password="pw")
    ada = Author.objects.create(name="Ada Lovelace", born=dt.date(1815, 12, 10))
    grace, created = Author.objects.get_or_create(name="Grace Hopper")
    assert created and isinstance(grace.pk, int)
    _, created = Author.objects.get_or_create(name="Grace Hopper")
    assert not created
    Book.objects.bulk_create([
        Book(author=ada, title="Notes on the Engine", price=Decimal("12.50"), meta={"pages": 40}),
        Book(author=ada, title="Letters", price=Decimal("7.25"), in_print=False),
        Book(author=grace, title="Compilers", price=Decimal("30.00"), meta={"tags": ["cobol"]}),
    ])
    Book.objects.filter(title="Letters").update(price=F("price") + 1)
    try:
        with transaction.atomic():
            Author.objects.create(name="Never")
            Author.objects.create(name="Ada Lovelace")
    except IntegrityError:
        pass
    else:
        raise AssertionError("a duplicate unique name was accepted")
    assert not Author.objects.filter(name="Never").exists(), "the atomic block rolled back"

    def reads(alias):
        books = Book.objects.using(alias)
        notes = books.select_related("author").get(title__icontains="ENGINE")
        assert notes.author.name == "Ada Lovelace" and notes.price == Decimal("12.50"), notes
        assert notes.meta == {"pages": 40} and notes.in_print is True
        assert isinstance(notes.added, dt.datetime) and notes.added.tzinfo is not None
        assert books.filter(title__startswith="Let").count() == 1
        assert books.filter(title__startswith="let").count() == 0, "startswith is case-sensitive"
        assert books.get(title="Letters").price == Decimal("8.25")
        assert list(books.filter(meta__pages=40).values_list("title", flat=True)) == ["Notes on the Engine"]
        authors = Author.objects.using(alias)
        born = authors.filter(born__range=(dt.date(1800, 1, 1), dt.date(1900, 1, 1)))
        assert [a.name for a in born] == ["Ada Lovelace"]
        counted = {a.name: (a.n, a.total) for a in
                   authors.annotate(n=Count("books"), total=Sum("books__price")).order_by("name")}
        assert counted == {"Ada Lovelace": (2, Decimal("20.75")),
                           "Grace Hopper": (1, Decimal("30.00"))}, counted
        assert books.aggregate(avg=Avg("price"))["avg"].quantize(Decimal("0.01")) == Decimal("16.92")
        titles = [b.title for a in authors.prefetch_related("books").order_by("name")
                  for b in a.books.order_by("title")]
        assert titles == ["Letters", "Notes on the Engine", "Compilers"], titles
        page = list(books.order_by("title").values_list("title", flat=True)[1:3])
        assert page == ["Letters", "Notes on the Engine"], page

    for i in range(len(ports)):
        eventually(lambda: reads(f"node{i}"))

    grace.delete()
    assert not Book.objects.filter(title="Compilers").exists(), "Django cascades the delete"
    out = io.StringIO()
    call_command("inspectdb", "shop_book", "shop_author", stdout=out)
    model = out.getvalue()
    assert "class ShopBook(models.Model)" in model and "models.ForeignKey('ShopAuthor'" in model, model
    for field in ("title = models.CharField(max_length=200)",
                  "name = models.CharField(unique=True, max_length=100)",
                  "price = models.DecimalField(", "in_print = models.BooleanField()",
                  "added = models.DateTimeField()", "meta = models.JSONField()",
                  "born = models.DateField(blank=True, null=True)"):
        assert field in model, f"{field} not in {model}"

    # .iterator() reads through a server-side cursor (DECLARE … WITH HOLD, FETCH, CLOSE).
    streamed = [a.name for a in Author.objects.order_by("name").iterator(chunk_size=1)]
    assert streamed == ["Ada Lovelace"], streamed
    # dumpdata (a server-side cursor too), flush (TRUNCATE of every table, then post-migrate
    # recreates content types and permissions) and loaddata (which resets each table's
    # sequence with setval(...)).
    fixture = io.StringIO()
    call_command("dumpdata", "shop", stdout=fixture)
    loaded_ids = sorted(Author.objects.values_list("pk", flat=True))
    call_command("flush", interactive=False, verbosity=0)
    assert not Author.objects.exists() and not Book.objects.exists() and not User.objects.exists()
    assert Permission.objects.filter(codename="add_book").exists(), "flush re-creates permissions"
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "shop.json"
        path.write_text(fixture.getvalue())
        call_command("loaddata", str(path), verbosity=0)
    assert sorted(Author.objects.values_list("pk", flat=True)) == loaded_ids
    assert Author.objects.get(name="Ada Lovelace").books.count() == 2
    later = Author.objects.create(name="Later")
    assert later.pk > max(loaded_ids), (later.pk, loaded_ids)


if __name__ == "__main__":
    main()
