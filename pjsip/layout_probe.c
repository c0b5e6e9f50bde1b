/*
 * Prints, as JSON, the byte offsets inside pjsip structs that bridge/sip/evsub_native.py
 * reads through ctypes (fields without an accessor function). scripts/build-pjsip compiles
 * it against the headers of the build it just made and ships the output in the wheel as
 * pjsua2/LAYOUT.json; tests/sip/test_native_layout.py compares it with the pinned values.
 */
#include <stddef.h>
#include <stdio.h>
#include <pjsip.h>
#include <pjsip-simple/evsub.h>

#define FIELD(name, type, member) \
    printf("  \"%s\": %zu,\n", name, offsetof(type, member))

int main(void)
{
    printf("{\n");
    printf("  \"pj_version\": \"%d.%d\",\n", PJ_VERSION_NUM_MAJOR, PJ_VERSION_NUM_MINOR);
    printf("  \"pointer_size\": %zu,\n", sizeof(void *));
    FIELD("rdata_msg", pjsip_rx_data, msg_info.msg);
    FIELD("rdata_cid", pjsip_rx_data, msg_info.cid);
    FIELD("rdata_from", pjsip_rx_data, msg_info.from);
    FIELD("rdata_to", pjsip_rx_data, msg_info.to);
    FIELD("rdata_via", pjsip_rx_data, msg_info.via);
    FIELD("rdata_cseq", pjsip_rx_data, msg_info.cseq);
    FIELD("msg_type", pjsip_msg, type);
    FIELD("msg_method_id", pjsip_msg, line.req.method.id);
    FIELD("msg_method_name", pjsip_msg, line.req.method.name);
    FIELD("msg_body", pjsip_msg, body);
    FIELD("tdata_pool", pjsip_tx_data, pool);
    FIELD("tdata_obj_name", pjsip_tx_data, obj_name);
    FIELD("tdata_msg", pjsip_tx_data, msg);
    FIELD("pool_obj_name", pj_pool_t, obj_name);
    FIELD("body_data", pjsip_msg_body, data);
    FIELD("body_len", pjsip_msg_body, len);
    FIELD("int_hdr_ivalue", pjsip_generic_int_hdr, ivalue);
    FIELD("module_on_tsx_state", pjsip_module, on_tsx_state);
    FIELD("evsub_user_on_server_timeout", pjsip_evsub_user, on_server_timeout);
    printf("  \"sizeof_pjsip_module\": %zu,\n", sizeof(pjsip_module));
    printf("  \"sizeof_pjsip_evsub_user\": %zu\n", sizeof(pjsip_evsub_user));
    printf("}\n");
    return 0;
}
