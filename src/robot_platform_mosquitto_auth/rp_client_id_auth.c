/*
 * rp_client_id_auth: Mosquitto 2.0 plugin that binds an MQTT client id to the client certificate.
 *
 * Why: with `use_identity_as_username true` Mosquitto 2.0 takes the user name from the certificate's CN
 * and then runs *no* authentication check at CONNECT (handle_connect.c: "Authentication assumed to be
 * cleared"), so any valid certificate could connect with any client id and, by MQTT's session takeover,
 * kick off the client that holds that id (r1's certificate as `deploy-r2` disconnected r2's job listener).
 * This plugin replaces `use_identity_as_username`: on MOSQ_EVT_BASIC_AUTH (called for every CONNECT once
 * TLS has verified the certificate against the site CA, `require_certificate true`) it
 *   - reads the certificate's single CN ([A-Za-z0-9_-], 1-64 characters; anything else is refused),
 *   - accepts the client id only if it is one of the templates with %u replaced by that CN
 *     (plugin_opt_client_ids, comma separated, default "%u"), e.g. "%u,deploy-%u,health-%u",
 *   - sets the user name to the CN (whatever the client sent), so the ACL's %u is the certificate.
 * A refused CONNECT never reaches the session takeover: the holder of the id stays connected.
 * Refusals are counted and logged (client id sanitised: it is attacker-chosen text).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define MAX_TEMPLATES 16
#define MAX_CN_LEN 64
#define LOG_ID_LEN 64

struct templates {
	char *items[MAX_TEMPLATES];
	int count;
};

static mosquitto_plugin_id_t *plugin_id;
static struct templates templates;
static unsigned long refused;

static int cn_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Copy of untrusted text fit for one log line. */
static void sanitise(const char *in, char *out, size_t size)
{
	size_t i = 0;
	for(; in && in[i] && i + 1 < size; i++){
		out[i] = (cn_char_ok(in[i]) || in[i] == '.' || in[i] == ':') ? in[i] : '?';
	}
	out[i] = '\0';
}

/* The certificate's only CN into cn (NUL terminated); 0 on success. */
static int certificate_cn(const struct mosquitto *client, char *cn, size_t size)
{
	X509 *cert = mosquitto_client_certificate(client);
	X509_NAME *name;
	int index, length, rc = -1;
	const unsigned char *data;

	if(!cert) return -1;
	name = X509_get_subject_name(cert);
	index = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	if(index >= 0 && X509_NAME_get_index_by_NID(name, NID_commonName, index) == -1){
		ASN1_STRING *value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
		length = value ? ASN1_STRING_length(value) : 0;
		data = value ? ASN1_STRING_get0_data(value) : NULL;
		if(data && length > 0 && (size_t)length < size && length <= MAX_CN_LEN){
			int i;
			for(i = 0; i < length && cn_char_ok((char)data[i]); i++){
				cn[i] = (char)data[i];
			}
			if(i == length){
				cn[length] = '\0';
				rc = 0;
			}
		}
	}
	X509_free(cert);
	return rc;
}

/* Is client_id template with its %u replaced by cn? */
static int matches(const char *template, const char *cn, const char *client_id)
{
	const char *mark = strstr(template, "%u");
	size_t pre, cn_len = strlen(cn), post;

	if(!mark) return strcmp(template, client_id) == 0;
	pre = (size_t)(mark - template);
	post = strlen(mark + 2);
	return strlen(client_id) == pre + cn_len + post
		&& strncmp(client_id, template, pre) == 0
		&& strncmp(client_id + pre, cn, cn_len) == 0
		&& strcmp(client_id + pre + cn_len, mark + 2) == 0;
}

static int refuse(const char *why, const char *cn, const char *client_id)
{
	char safe_id[LOG_ID_LEN + 1], safe_cn[MAX_CN_LEN + 1];
	sanitise(client_id, safe_id, sizeof(safe_id));
	sanitise(cn, safe_cn, sizeof(safe_cn));
	refused++;
	mosquitto_log_printf(MOSQ_LOG_WARNING,
			"rp_client_id_auth: refused CONNECT of client id '%s' with certificate CN '%s': %s (%lu refused so far)",
			safe_id, safe_cn, why, refused);
	return MOSQ_ERR_AUTH;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *client_id = mosquitto_client_id(ed->client);
	char cn[MAX_CN_LEN + 1] = "";
	int i;
	(void)event;
	(void)userdata;

	if(certificate_cn(ed->client, cn, sizeof(cn)) != 0){
		return refuse("no certificate with exactly one CN of 1-64 [A-Za-z0-9_-]", cn, client_id);
	}
	if(!client_id) return refuse("no client id", cn, "");
	for(i = 0; i < templates.count; i++){
		if(matches(templates.items[i], cn, client_id)){
			if(mosquitto_set_username(ed->client, cn) != MOSQ_ERR_SUCCESS){
				return refuse("cannot set the user name", cn, client_id);
			}
			return MOSQ_ERR_SUCCESS;
		}
	}
	return refuse("client id does not belong to this certificate", cn, client_id);
}

static void free_templates(void)
{
	int i;
	for(i = 0; i < templates.count; i++) free(templates.items[i]);
	templates.count = 0;
}

/* Split "a,b,c" (spaces around items ignored) into templates; 0 on success. */
static int parse_templates(const char *value)
{
	const char *start = value;
	while(*start){
		const char *end = strchr(start, ',');
		size_t len = end ? (size_t)(end - start) : strlen(start);
		while(len && *start == ' '){ start++; len--; }
		while(len && start[len - 1] == ' ') len--;
		if(len){
			char *item;
			if(templates.count == MAX_TEMPLATES) return -1;
			item = strndup(start, len);
			if(!item) return -1;
			/* at most one %u: anything else is a configuration error */
			if(strstr(item, "%u") && strstr(strstr(item, "%u") + 2, "%u")){ free(item); return -1; }
			templates.items[templates.count++] = item;
		}
		if(!end) break;
		start = end + 1;
	}
	return templates.count ? 0 : -1;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;
	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options, int option_count)
{
	int i;
	const char *value = "%u";
	(void)userdata;

	for(i = 0; i < option_count; i++){
		if(strcmp(options[i].key, "client_ids") == 0){
			value = options[i].value;
		}else{
			mosquitto_log_printf(MOSQ_LOG_ERR, "rp_client_id_auth: unknown option plugin_opt_%s", options[i].key);
			return MOSQ_ERR_INVAL;
		}
	}
	if(parse_templates(value) != 0){
		free_templates();
		mosquitto_log_printf(MOSQ_LOG_ERR,
				"rp_client_id_auth: plugin_opt_client_ids must list 1-%d client id templates, each with at most one %%u",
				MAX_TEMPLATES);
		return MOSQ_ERR_INVAL;
	}
	plugin_id = identifier;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "rp_client_id_auth: client ids bound to certificate CNs (%d templates)",
			templates.count);
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	free_templates();
	return MOSQ_ERR_SUCCESS;
}
