// AAR: org.asyncoffers.AsyncOffersClient (bindings/kotlin/src), the UniFFI-generated
// org.asyncoffers.ffi (bindings/kotlin/generated) and jniLibs/<abi>/libasync_offers.so, which
// the generated code loads through JNA under the name `async_offers` (uniffi.toml's cdylib_name).
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
    `maven-publish`
}

android {
    namespace = "org.asyncoffers"
    compileSdk = 35

    defaultConfig {
        // Android 7.0. build-jnilibs.sh links the native library against the same API level.
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }

    sourceSets["main"].apply {
        kotlin.srcDirs("../../bindings/kotlin/src", "../../bindings/kotlin/generated")
        // Filled by ../build-jnilibs.sh: arm64-v8a, armeabi-v7a, x86_64.
        jniLibs.srcDirs("src/main/jniLibs")
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    publishing {
        singleVariant("release") { withSourcesJar() }
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // The AAR, not the jar: it carries libjnidispatch.so for every Android ABI. 5.17.0 is the
    // first JNA whose libjnidispatch.so loads on 16 KB page devices.
    implementation("net.java.dev.jna:jna:5.17.0@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
}

publishing {
    publications {
        register<MavenPublication>("release") {
            groupId = "org.asyncoffers"
            artifactId = "async-offers-android"
            version = "0.1.0"
            afterEvaluate { from(components["release"]) }
        }
    }
}
