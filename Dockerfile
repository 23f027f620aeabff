# The image of the local docker-compose stack: Airflow 3.3.2 + Java (for Spark) + txnwatch's requirements.
FROM apache/airflow:3.3.2

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
 && apt-get autoremove -yqq --purge && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/default-java
ENV JAVA_HOME=/usr/lib/jvm/default-java \
    SPARK_LOCAL_IP=127.0.0.1

USER airflow
COPY --chown=airflow:root requirements.txt /opt/txnwatch/requirements.txt
# Pin Airflow itself so the requirements cannot move it (the official image's recommendation).
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/txnwatch/requirements.txt

# The package, installed editable: docker-compose mounts txnwatch/, sql/ and spark_jobs/ over these
# copies so code changes need no rebuild.
COPY --chown=airflow:root pyproject.toml README.md /opt/txnwatch/
COPY --chown=airflow:root txnwatch /opt/txnwatch/txnwatch
COPY --chown=airflow:root sql /opt/txnwatch/sql
COPY --chown=airflow:root spark_jobs /opt/txnwatch/spark_jobs
RUN pip install --no-cache-dir --no-deps -e /opt/txnwatch
