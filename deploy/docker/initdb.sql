-- One database per service (docker-compose's postgres runs this once, on an empty volume).
CREATE DATABASE registry;
CREATE DATABASE custody;
CREATE DATABASE audit;
