-- One Postgres for both servers, each with its own database; the role comes from POSTGRES_USER.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
