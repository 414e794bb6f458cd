"""The stages of the demo pipeline, in the order the flow runs them:

``orders`` (produce orders to Kafka), ``to_postgres`` (Kafka -> PostgreSQL upsert),
``to_lake`` (PostgreSQL -> Parquet on S3 and GCS, incremental) and ``summary`` (the lake read
back with pyarrow).
"""
