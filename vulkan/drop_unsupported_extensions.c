/*
 * A Vulkan layer that lets SAPIEN 2.2 run on software Vulkan (Mesa lavapipe).
 *
 * SAPIEN's wheel is built with CUDA interop and always asks vkCreateDevice for
 * VK_KHR_external_semaphore_fd, which lavapipe does not offer. The layer's manifest
 * declares that extension (so the loader accepts the request); vkCreateDevice below
 * then drops every requested device extension the physical device does not list and
 * reports each one on stderr. The extension is only used to share tensors with CUDA,
 * which a CPU-only process never does.
 *
 * One instance at a time is assumed (SAPIEN creates one per process).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>
#include <vulkan/vk_layer.h>

#define EXPORT __attribute__((visibility("default")))

static VkInstance g_instance;
static PFN_vkGetInstanceProcAddr g_next_instance_proc;
static PFN_vkGetDeviceProcAddr g_next_device_proc;

/* Find the loader's link info in a create-info chain (instance or device). */
static void *find_link_info(const void *chain, VkStructureType type) {
    const VkBaseInStructure *s = chain;
    for (; s; s = s->pNext) {
        /* VkLayerInstanceCreateInfo and VkLayerDeviceCreateInfo share this prefix. */
        const VkLayerInstanceCreateInfo *info = (const void *)s;
        if (s->sType == type && info->function == VK_LAYER_LINK_INFO) return (void *)s;
    }
    return NULL;
}

EXPORT VKAPI_ATTR VkResult VKAPI_CALL vkCreateInstance(
    const VkInstanceCreateInfo *create_info, const VkAllocationCallbacks *allocator,
    VkInstance *instance) {
    VkLayerInstanceCreateInfo *link =
        find_link_info(create_info->pNext, VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO);
    if (!link) return VK_ERROR_INITIALIZATION_FAILED;
    g_next_instance_proc = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
    link->u.pLayerInfo = link->u.pLayerInfo->pNext;
    PFN_vkCreateInstance next_create =
        (PFN_vkCreateInstance)g_next_instance_proc(NULL, "vkCreateInstance");
    VkResult result = next_create(create_info, allocator, instance);
    if (result == VK_SUCCESS) g_instance = *instance;
    return result;
}

static int device_supports(VkPhysicalDevice physical, const char *name) {
    PFN_vkEnumerateDeviceExtensionProperties enumerate =
        (PFN_vkEnumerateDeviceExtensionProperties)g_next_instance_proc(
            g_instance, "vkEnumerateDeviceExtensionProperties");
    uint32_t count = 0;
    enumerate(physical, NULL, &count, NULL);
    VkExtensionProperties *props = calloc(count ? count : 1, sizeof *props);
    enumerate(physical, NULL, &count, props);
    int found = 0;
    for (uint32_t i = 0; i < count && !found; i++)
        found = strcmp(props[i].extensionName, name) == 0;
    free(props);
    return found;
}

EXPORT VKAPI_ATTR VkResult VKAPI_CALL vkCreateDevice(
    VkPhysicalDevice physical, const VkDeviceCreateInfo *create_info,
    const VkAllocationCallbacks *allocator, VkDevice *device) {
    VkLayerDeviceCreateInfo *link =
        find_link_info(create_info->pNext, VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO);
    if (!link) return VK_ERROR_INITIALIZATION_FAILED;
    PFN_vkCreateDevice next_create = (PFN_vkCreateDevice)
        link->u.pLayerInfo->pfnNextGetInstanceProcAddr(g_instance, "vkCreateDevice");
    g_next_device_proc = link->u.pLayerInfo->pfnNextGetDeviceProcAddr;
    link->u.pLayerInfo = link->u.pLayerInfo->pNext;

    uint32_t n = create_info->enabledExtensionCount, kept = 0;
    const char **names = calloc(n ? n : 1, sizeof *names);
    for (uint32_t i = 0; i < n; i++) {
        const char *name = create_info->ppEnabledExtensionNames[i];
        if (device_supports(physical, name))
            names[kept++] = name;
        else if (getenv("MS2AGENT_VKCOMPAT_VERBOSE"))
            fprintf(stderr, "[vkcompat] dropped unsupported device extension %s\n", name);
    }
    VkDeviceCreateInfo filtered = *create_info;
    filtered.enabledExtensionCount = kept;
    filtered.ppEnabledExtensionNames = names;
    VkResult result = next_create(physical, &filtered, allocator, device);
    free(names);
    return result;
}

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetDeviceProcAddr(VkDevice device,
                                                                    const char *name) {
    if (strcmp(name, "vkGetDeviceProcAddr") == 0) return (PFN_vkVoidFunction)vkGetDeviceProcAddr;
    return g_next_device_proc(device, name);
}

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetInstanceProcAddr(VkInstance instance,
                                                                      const char *name) {
    if (strcmp(name, "vkGetInstanceProcAddr") == 0) return (PFN_vkVoidFunction)vkGetInstanceProcAddr;
    if (strcmp(name, "vkCreateInstance") == 0) return (PFN_vkVoidFunction)vkCreateInstance;
    if (strcmp(name, "vkCreateDevice") == 0) return (PFN_vkVoidFunction)vkCreateDevice;
    if (strcmp(name, "vkGetDeviceProcAddr") == 0) return (PFN_vkVoidFunction)vkGetDeviceProcAddr;
    return g_next_instance_proc(instance, name);
}
