{{/*
Names, labels and the pieces every workload shares. The services' settings reach them as the environment variables
docs/configuration.md lists, with the service's prefix (REGISTRY_, CUSTODY_, AUDIT_).
*/}}

{{- define "mc.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one workload: (dict "root" $ "service" "audit" "role" "api") */}}
{{- define "mc.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ printf "%s-%s" .service .role }}
{{- end -}}

{{/* The services and the processes each runs as a Deployment of its own. */}}
{{- define "mc.services" -}}
registry: [api, relay]
custody: [api, relay, consumer]
audit: [api, relay, consumer]
{{- end -}}

{{/* Default HTTP ports (the settings classes' PORT defaults). */}}
{{- define "mc.ports" -}}
registry: 8001
custody: 8002
audit: 8003
{{- end -}}

{{/* The topics and their partitions: shared/topics.py's TOPICS (tests/deploy/test_helm_chart.py checks them). */}}
{{- define "mc.topics" -}}
custody.events: 6
registry.events: 3
audit.flags: 3
audit.decisions: 3
{{- end -}}

{{/*
Kafka ACLs per service (docs/decisions/kafka-cluster.md): topics written, topics read, its consumer group, and the
groups named after it (audit's webhooks consumer: `<group>-webhooks`, audit/webhooks_consumer.py).
*/}}
{{- define "mc.acls" -}}
registry:
  write: [registry.events]
  read: []
custody:
  write: [custody.events]
  read: [registry.events]
  group: custody
audit:
  write: [audit.flags, audit.decisions]
  read: [registry.events, custody.events, audit.decisions, audit.flags]
  group: audit
  groupSuffixes: [-webhooks]
{{- end -}}

{{/*
"true" for audit's consumer: it runs as the audit service with its consumer on (`python -m audit`, its API behind no
Service), because the scheduled check for shipments overdue in transit runs beside the consumer there, not in
`python -m audit.consumer`. Its pods are probed like the APIs.
*/}}
{{- define "mc.auditWorker" -}}
{{- and (eq .service "audit") (eq .role "consumer") -}}
{{- end -}}

{{- define "mc.kafkaName" -}}
{{- default (printf "%s-kafka" (include "mc.fullname" .)) .Values.kafka.name -}}
{{- end -}}

{{- define "mc.dbCluster" -}}
{{- printf "%s-%s-db" (include "mc.fullname" .root) .service -}}
{{- end -}}

{{- define "mc.kafkaUser" -}}
{{- printf "%s-%s" (include "mc.fullname" .root) .service -}}
{{- end -}}

{{- define "mc.tokenSecret" -}}
{{- default (printf "%s-operator-token" (include "mc.fullname" .)) .Values.operatorToken.existingSecret -}}
{{- end -}}

{{- define "mc.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The consumer group of a service: its CONSUMER_GROUP setting if given, else the service's name. */}}
{{- define "mc.group" -}}
{{- $svc := index .root.Values .service -}}
{{- default .service (index $svc.env "CONSUMER_GROUP") -}}
{{- end -}}

{{/*
Where a browser reaches an API (dict "root" $ "service" "registry"): its Ingress host when the ingress is on (https
when it has a TLS Secret), else its Service inside the cluster.
*/}}
{{- define "mc.publicUrl" -}}
{{- $in := .root.Values.ingress -}}
{{- $host := (index $in .service).host -}}
{{- if and $in.enabled $host -}}
{{- printf "%s://%s" (ternary "https" "http" (ne (index $in .service).tlsSecret "")) $host -}}
{{- else -}}
{{- printf "http://%s-%s:%v" (include "mc.fullname" .root) .service (index (include "mc.ports" .root | fromYaml) .service) -}}
{{- end -}}
{{- end -}}

{{/* The port of tracing.otlpEndpoint (http://collector:4318): the URL's, else its scheme's default. */}}
{{- define "mc.otlpPort" -}}
{{- $u := urlParse .Values.tracing.otlpEndpoint -}}
{{- $hostPort := splitList ":" $u.host -}}
{{- if eq (len $hostPort) 2 -}}
{{- last $hostPort -}}
{{- else -}}
{{- ternary 443 80 (eq $u.scheme "https") -}}
{{- end -}}
{{- end -}}

{{/* A map as OTEL_RESOURCE_ATTRIBUTES writes it: key=value,key=value (keys in order). */}}
{{- define "mc.keyValues" -}}
{{- $pairs := list -}}
{{- range $k, $v := . -}}
{{- $pairs = append $pairs (printf "%s=%v" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
The environment of every process of a service: (dict "root" $ "service" "custody" "role" "api").
The database URL is put together from the CloudNativePG application Secret (its generated password is alphanumeric,
so it needs no escaping in a URL); Kafka is reached over TLS with SCRAM-SHA-512 as the service's KafkaUser.
*/}}
{{- define "mc.env" -}}
{{- $root := .root -}}
{{- $svc := .service -}}
{{- $p := printf "%s_" (upper $svc) -}}
{{- $values := index $root.Values $svc -}}
{{- $db := include "mc.dbCluster" (dict "root" $root "service" $svc) -}}
- name: DB_USER
  valueFrom: {secretKeyRef: {name: {{ $db }}-app, key: username}}
- name: DB_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $db }}-app, key: password}}
- name: {{ $p }}DATABASE_URL
  value: {{ printf "postgresql+asyncpg://$(DB_USER):$(DB_PASSWORD)@%s-rw:5432/%s" $db $svc | quote }}
- name: {{ $p }}KAFKA_BOOTSTRAP_SERVERS
  value: {{ printf "%s-kafka-bootstrap:%v" (include "mc.kafkaName" $root) $root.Values.kafka.listenerPort | quote }}
- name: {{ $p }}KAFKA_SECURITY_PROTOCOL
  value: SASL_SSL
- name: {{ $p }}KAFKA_SASL_MECHANISM
  value: SCRAM-SHA-512
- name: {{ $p }}KAFKA_SASL_USERNAME
  value: {{ include "mc.kafkaUser" (dict "root" $root "service" $svc) | quote }}
- name: {{ $p }}KAFKA_SASL_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "mc.kafkaUser" (dict "root" $root "service" $svc) }}, key: password}}
- name: {{ $p }}KAFKA_SSL_CAFILE
  value: /etc/kafka-ca/ca.crt
- name: {{ $p }}TOPIC_PREFIX
  value: {{ $root.Values.kafka.topicPrefix | quote }}
- name: {{ $p }}ADMIN_TOKEN
  valueFrom: {secretKeyRef: {name: {{ include "mc.tokenSecret" $root }}, key: {{ $root.Values.operatorToken.key }}}}
- name: {{ $p }}HOST
  value: 0.0.0.0
- name: {{ $p }}RELAY_ENABLED
  value: "false"
{{- if and .role (ne .role "api") (ne (include "mc.auditWorker" .) "true") }}
# a relay or consumer on its own: /metrics, /healthz and /readyz on this port (shared/ops_server.py)
- name: {{ $p }}OPS_PORT
  value: "9100"
{{- end }}
{{- if ne $svc "registry" }}
- name: {{ $p }}CONSUMER_ENABLED
  value: {{ include "mc.auditWorker" . | quote }}
- name: {{ $p }}REGISTRY_URL
  value: {{ printf "http://%s-registry:%v" (include "mc.fullname" $root) (index (include "mc.ports" $root | fromYaml) "registry") | quote }}
{{- end }}
{{- if eq $svc "audit" }}
- name: AUDIT_PUBLIC_REGISTRY_URL
  value: {{ default (include "mc.publicUrl" (dict "root" $root "service" "registry")) $values.publicRegistryUrl | quote }}
- name: AUDIT_CUSTODY_URL
  value: {{ default (include "mc.publicUrl" (dict "root" $root "service" "custody")) $values.custodyUrl | quote }}
{{- end }}
{{- with $root.Values.tracing }}
{{- if .otlpEndpoint }}
# OpenTelemetry's own variables (no prefix): traces by OTLP over HTTP to the collector
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
{{- end }}
{{- if .sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
{{- end }}
{{- if ne (toString .samplerArg) "" }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | toString | quote }}
{{- end }}
{{- with .resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "mc.keyValues" . | quote }}
{{- end }}
{{- end }}
{{- range $k, $v := $values.env }}
- name: {{ $p }}{{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* What every pod of the chart shares: (dict "root" $ "service" "custody" "role" "api" "command" (list ...)). */}}
{{- define "mc.podSpec" -}}
{{- $root := .root -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
securityContext: {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: kafka-ca
    secret:
      secretName: {{ include "mc.kafkaName" $root }}-cluster-ca-cert
      items: [{key: ca.crt, path: ca.crt}]
  - name: tmp
    emptyDir: {}
{{- end -}}

{{- define "mc.containerBase" -}}
image: {{ include "mc.image" .root | quote }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext: {{- toYaml .root.Values.securityContext | nindent 2 }}
env: {{- include "mc.env" . | nindent 2 }}
volumeMounts:
  - {name: kafka-ca, mountPath: /etc/kafka-ca, readOnly: true}
  - {name: tmp, mountPath: /tmp}
{{- end -}}

{{/* A HorizontalPodAutoscaler on CPU: (dict "root" $ "service" "audit" "role" "api" "scaling" <values>). */}}
{{- define "mc.hpa" }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "mc.fullname" .root }}-{{ .service }}-{{ .role }}
  labels: {{- include "mc.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .service }}-{{ .role }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "mc.fullname" .root }}-{{ .service }}-{{ .role }}
  minReplicas: {{ .scaling.minReplicas }}
  maxReplicas: {{ .scaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .scaling.targetCPUUtilizationPercentage }}
{{- end }}
