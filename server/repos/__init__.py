"""The composable index views (stage, merged), their simple-page rendering and page cache."""
